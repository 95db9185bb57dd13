"""Phase 1 of a study, the data: tasks' datasets prepared once into a content-addressed
store (`store`), by a Prefect flow of their own (`prepare`).
"""
