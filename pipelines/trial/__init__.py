"""What runs inside a Ray worker: one trial's training (`trainable`) and the checkpoints
that let Tune restore it (`restorable`).
"""
