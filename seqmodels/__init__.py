"""seqmodels: the pure modelling half of seqlab (torch, lightning, numpy; never ray, prefect, mlflow)."""
