"""What a run stands on: run folders and checkpoints (:mod:`.runs`), devices, precision,
ranks (:mod:`.distributed`), progress bars and TensorBoard events (:mod:`.tensorboard`)."""
