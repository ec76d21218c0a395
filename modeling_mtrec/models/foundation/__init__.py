"""Multi-domain search-and-recommendation foundation model for cold-start domains (Gong et al., CIKM 2023)."""

from .configuration_foundation import FoundationConfig
from .modeling_foundation import FoundationModel, FoundationOutput, FoundationPreTrainedModel

__all__ = ["FoundationConfig", "FoundationModel", "FoundationOutput", "FoundationPreTrainedModel"]
