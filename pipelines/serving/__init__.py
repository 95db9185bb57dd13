"""A study's champion as an MLflow model: the pyfunc runtime that answers requests (`runtime`),
its logging into MLflow and the registry (`champion`), and `seqlab sample`'s client (`client`).

The package re-exports every wrapper class: a registered champion's code imports its wrapper
from `pipelines.serving`, so the names must stay importable there.
"""

from pipelines.serving.champion import (  # noqa: F401
    LM_MAX_LENGTH,
    MODEL_CODE,
    PROMPT_LENGTH,
    input_example,
    kind_of,
    log_champion,
    make_card,
    signature,
)
from pipelines.serving.client import SampleError, load, sample  # noqa: F401
from pipelines.serving.runtime import (  # noqa: F401
    WRAPPERS,
    BadRequest,
    Card,
    Classifier,
    GeneratorWrapper,
    LanguageModelSampler,
    Regressor,
    Sampling,
    Seq2SeqGenerator,
    Symbols,
    Wrapper,
    build_network,
)
