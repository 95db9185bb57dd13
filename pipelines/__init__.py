"""pipelines: the orchestration half of seqlab (spec, Prefect flows, Ray Tune, MLflow, CLI)."""
