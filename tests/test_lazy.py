import pytest

import watchnext
import watchnext.serve


def test_names_resolve_on_first_use_and_stay():
    from watchnext.config import load_config

    assert watchnext.load_config is load_config
    assert "load_config" in vars(watchnext)  # cached: __getattr__ is not asked again
    assert {"Ranker", "load_config", "__version__"} <= set(dir(watchnext))
    assert "ServingModel" in dir(watchnext.serve)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="'watchnext.serve' has no attribute 'nope'"):
        watchnext.serve.nope  # noqa: B018
    assert not hasattr(watchnext, "nope")
