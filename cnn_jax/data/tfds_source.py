"""Small image data sets from TensorFlow Datasets, read whole into host memory."""

import socket
import urllib.parse

import numpy as np

from cnn_jax.data.files import Arrays
from cnn_jax.errors import DataError


def read(name: str, split: str, data_dir: str | None, download: bool = True) -> Arrays:
    """Reads `split` of the tfds data set `name`, preparing it in `data_dir` first if needed."""
    require_tensorflow(f"reading {name} from tfds", "or read its distribution files with "
                       "--config.dataset.source=files --config.dataset.data_dir=FOLDER")
    import tensorflow_datasets as tfds  # Imported late: TensorFlow is slow to load.

    builder = tfds.builder(name, data_dir=data_dir or None)
    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    except AssertionError:  # tfds's way of saying the data set is not prepared.
        where = builder.data_dir_root
        if not download:
            raise DataError(
                f"{name} is not prepared in tfds data_dir {where}; prepare it with "
                f"`tfds build {name} --data_dir={where}` or set dataset.download=True."
            ) from None
        check_download_hosts(
            name, builder, where, "copy its distribution files to a folder and run with "
            "--config.dataset.source=files --config.dataset.data_dir=FOLDER",
        )
        try:
            builder.download_and_prepare()
        except Exception as e:  # Network, disk and checksum failures all end here.
            raise DataError(f"tfds could not download and prepare {name} in {where}: {e}") from None
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    images, labels = [], []
    for batch in tfds.as_numpy(dataset.batch(10_000)):
        images.append(batch["image"])
        labels.append(batch["label"])
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32)


def require_tensorflow(purpose: str, advice: str = ""):
    """TensorFlow, which tfds prepares and reads data sets with; without it one DataError that
    says how to install it (cnn_jax's `tfds` extra, or any TensorFlow: Colab's will do)."""
    try:
        import tensorflow as tf
    except ImportError:
        raise DataError(
            f"{purpose} needs TensorFlow, which is not installed; install it with "
            f"`pip install tensorflow-cpu` (cnn_jax's tfds extra){', ' + advice if advice else ''}."
        ) from None
    return tf


def check_download_hosts(name: str, builder, where: str, advice: str) -> None:
    """Fails in seconds, not after minutes of retries, when the download servers are
    unreachable; the error names the server and ends with `advice`."""
    urls = [urllib.parse.urlparse(url) for url in (builder.url_infos or {})]
    servers = {(u.hostname, u.port or (443 if u.scheme == "https" else 80)) for u in urls}
    for host, port in sorted(s for s in servers if s[0]):
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError:
            raise DataError(
                f"{name} is not in tfds data_dir {where} and cannot be downloaded ({host} is "
                f"unreachable); {advice}."
            ) from None
