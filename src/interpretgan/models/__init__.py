"""Classifiers: the zoo (:mod:`.zoo`), wrappers that let the toolkit read a model
(:mod:`.wrappers`: normalisation, output selection), loading any model from a checkpoint or a
user's model file (:mod:`.loading`, the one place that does), and the
:class:`~.config.ModelConfig` with its rules.

This package re-exports the public names of its modules (``from interpretgan.models import
create``)."""
from .config import ModelConfig  # noqa: F401
from .loading import (CheckpointMismatchError, ModelFileError, classifier_from, file_sha256,
                      import_model_file, load_any, load_classifier, load_model, load_model_file,
                      load_state_dict_strict, model_and_example, model_file_record, split_spec)  # noqa: F401
from .wrappers import (Normalize, output_selection, read_output, select_output, split_normalization,
                       with_normalization)  # noqa: F401
from .zoo import (BasicBlock, MODELS, NetworkBlock, POOLS, SmallCNN, VGG16, VGG16_CFG, WideResNet,
                  build_model, classifier_state, create, dataset_classes, dataset_shape,
                  fast_layout, input_channels, list_models, register_model, smallcnn, vgg16,
                  wrn_34_10)  # noqa: F401
