"""Reserved token ids, shared by the tasks that write token data and the models that read it.

Kept apart from `seqmodels.batch` so that preparing data never imports torch.
"""

PAD, BOS, EOS = 0, 1, 2  # reserved token ids; a task's own symbols start at FIRST_SYMBOL
FIRST_SYMBOL = 3
