"""Fixtures for the data-path tests: the shared real data and a once-per-session Omniglot prep."""
import pytest

from data_test_utils import SHARED_DATA, shared_file


@pytest.fixture(scope="session")
def omniglot_source():
    shared_file("omniglot", "images_background.zip")
    shared_file("omniglot", "images_evaluation.zip")
    return SHARED_DATA / "omniglot"


@pytest.fixture(scope="session")
def omniglot_prepared(omniglot_source, tmp_path_factory):
    """DATA folder holding omniglot_resized built from the real archives (about 6 s)."""
    from data_prep.omniglot import prepare_omniglot

    data = tmp_path_factory.mktemp("omniglot_data")
    prepare_omniglot(omniglot_source, data)
    return data


@pytest.fixture(scope="session")
def omniglot_data(omniglot_prepared):
    from maml_tf.few_shot_data import load_omniglot

    return load_omniglot(omniglot_prepared)
