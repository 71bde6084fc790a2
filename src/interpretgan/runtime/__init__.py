"""What a run stands on: run folders and checkpoints (:mod:`.runs`), devices, precision,
ranks (:mod:`.distributed`) and progress bars."""
