"""A study's champion as an MLflow model: the pyfunc runtime that answers requests,
and `seqlab sample`'s client.

The package re-exports the runtime: a registered champion's code imports its wrapper class
from `pipelines.serving`, so the name must stay importable there.
"""

from pipelines.serving.runtime import (  # noqa: F401
    LM_MAX_LENGTH,
    MODEL_CODE,
    PROMPT_LENGTH,
    WRAPPERS,
    BadRequest,
    Card,
    Classifier,
    LanguageModelSampler,
    Regressor,
    SampleError,
    Sampling,
    Seq2SeqGenerator,
    Symbols,
    build_network,
    continuation,
    ending_by,
    input_example,
    kind_of,
    load,
    log_champion,
    make_card,
    sample,
    signature,
)
