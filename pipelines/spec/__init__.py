"""What a user writes: the study spec's schema, its rules, and loading it from YAML.

`task` is the task section on its own (no torch: `seqlab data prepare` reads it);
`study` is the whole spec built from it.
"""
