"""chainrule.data: lazy submodules and re-exported names."""

import pytest

import chainrule.data as data


def test_lazy_names():
    from chainrule.data import trees

    assert data.trees is trees
    assert data.parse_tree is trees.parse_tree
    assert data.load_dataset is data.datasets.load
    assert data.Vocab is data.embeddings.Vocab
    assert data.read_conll is data.conll.read_conll
    assert {"sst", "conll", "Tree", "evaluate"} <= set(dir(data))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        data.nope  # noqa: B018


def test_docstring_examples():
    import doctest

    for name in ("trees", "sst", "conll", "embeddings", "datasets"):
        module = getattr(data, name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
