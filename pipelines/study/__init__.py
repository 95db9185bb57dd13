"""The study: the Prefect flow that runs a spec's phases (data, tune, repeat, register,
report) on the driver, and what it leans on: failures, progress, resume and rerun.
"""
