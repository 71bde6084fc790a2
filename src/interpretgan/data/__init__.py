"""Data sets: where the files come from and how they are checked (:mod:`.sources`: MNIST,
Fashion-MNIST, CIFAR-10), CelebA (:mod:`.celeba`), a user's image folder (:mod:`.folder`),
tensor transforms (:mod:`.transforms`), a job's train/test split (:mod:`.splits`) and the
:class:`~.config.DataConfig` with its rules and the :data:`~.config.DATASETS` registry.

This package re-exports the public names of its modules (``from interpretgan.data import
load_split``)."""
from .celeba import CelebA, CELEBA_SPLITS, load_celeba  # noqa: F401
from .config import DataConfig, DataError, DATASETS  # noqa: F401
from .folder import (FOLDER_IN_MEMORY_BYTES, FolderImages, FolderListing, IMAGE_SUFFIXES,
                     decode_image, folder_mode, list_folder, load_folder)  # noqa: F401
from .sources import (CIFAR10_CLASSES, CIFAR10_MD5, CIFAR10_TGZ_MD5, CIFAR10_URL, FASHION_CLASSES,
                      FASHION_FILES, FileSet, ImageDataset, MNIST_FILES, default_cache_dir,
                      download, fetch_files, file_digest, load_cifar10, load_fashion_mnist,
                      load_mnist, npm_pack, read_cifar_batch, read_idx, subset_indices)  # noqa: F401
from .splits import (balanced_order, batches, checkpoint_data_config, content_digest,
                     dataset_labels, images_at, load_dataset, load_split, native_size, num_batches,
                     take, unpinned, user_files)  # noqa: F401
from .transforms import crop_flip, random_crop_flip, uncrop_flip  # noqa: F401
