"""MTRec (Bi et al., Findings of ACL 2022): configuration and model. Processing (title tokens + BIO tags), the
collator and the Trainer live beside them in `processing_mtrec`, `collator` and `trainer`."""

from .configuration_mtrec import MTRecConfig
from .modeling_mtrec import MTRecModel, MTRecOutput, MTRecPreTrainedModel

__all__ = ["MTRecConfig", "MTRecModel", "MTRecOutput", "MTRecPreTrainedModel"]
