"""One folder per model, as transformers' `models/<name>/`: `configuration_<name>.py` and `modeling_<name>.py`
(self-contained: they import only each other, torch and transformers, so a saved folder's remote code stands
alone), plus what only that model uses (its processing or features, collator and Trainer subclass).

The `__init__` of each model folder imports only its configuration and modeling files, so that the data and
evaluation modules can use a model's processing without importing its Trainer.
"""
