from kfp import dsl
from kfp.dsl import Dataset, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def data_prep(
    dataset: Output[Dataset],
    insize: int = 32,
    DATASET_SOURCE: str = "fashion-mnist",
    DATASET_NAME: str = "",
    DATASET_PATH: str = "",
    VAL_FRACTION: float = 0.1,
    CALIBRATION_SAMPLES: int = 512,
    MAX_TRAIN_SAMPLES: int = 0,
    MAX_TEST_SAMPLES: int = 0,
    SEED: int = 0,
):
    """Prepare a classification dataset artifact (train/val/calibration/test splits)."""
    from visioncompress.config import DataConfig
    from visioncompress.data import prepare_dataset
    from visioncompress.kfp_io import describe_dataset, stage

    with stage("data_prep"):
        config = DataConfig(source=DATASET_SOURCE, dataset_name=DATASET_NAME, path=DATASET_PATH, insize=insize,
                            val_fraction=VAL_FRACTION, calibration_samples=CALIBRATION_SAMPLES,
                            max_train_samples=MAX_TRAIN_SAMPLES, max_test_samples=MAX_TEST_SAMPLES, seed=SEED)
        describe_dataset(dataset, prepare_dataset(config, dataset.path))
