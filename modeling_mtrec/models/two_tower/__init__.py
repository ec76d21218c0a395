"""Two-tower retriever (Yi et al. RecSys 2019; Yao et al. CIKM 2021): configuration and model. Item features,
the collator and the Trainer live beside them in `features`, `collator` and `trainer`."""

from .configuration_two_tower import TwoTowerConfig
from .modeling_two_tower import TwoTowerModel, TwoTowerOutput, TwoTowerPreTrainedModel

__all__ = ["TwoTowerConfig", "TwoTowerModel", "TwoTowerOutput", "TwoTowerPreTrainedModel"]
