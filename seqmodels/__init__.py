"""seqmodels: the pure modelling half of seqlab.

It imports torch, lightning and numpy, and never ray, prefect or mlflow.
"""
