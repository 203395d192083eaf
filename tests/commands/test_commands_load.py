"""commands.load_trained: the checkpoint check shared by ``chainrule sentiment``/``tag`` and the
train commands' reports -- each wrong checkpoint is a ValueError that names the file, what is wrong
and the command that writes the right kind."""
import numpy as np
import pytest

from chainrule.checkpoint import save_checkpoint
from chainrule.commands import rntn, sequence, window

# command -> (its loader, a model name it accepts)
LOADERS = {"rntn": (rntn.load_model, "treelstm"), "sequence": (sequence.load_model, "sequence"),
           "window": (window.load_model, "window")}


@pytest.mark.parametrize("command", sorted(LOADERS))
@pytest.mark.parametrize("case, wrong", [("no config", "no model configuration"),
                                         ("other model", "its model is 'mlp'"),
                                         ("no vocab", "no vocabulary")])
def test_wrong_checkpoint_is_a_clear_error(tmp_path, command, case, wrong):
    load, model = LOADERS[command]
    extra = {"no config": {}, "other model": {"config": {"model": "mlp"}, "vocab": {"words": ["*UNK*"]}},
             "no vocab": {"config": {"model": model}}}[case]
    path = tmp_path / "x.safetensors"
    save_checkpoint(path, {"model.w": np.zeros(2)}, {"extra": extra})
    with pytest.raises(ValueError) as e:
        load(str(path))
    msg = str(e.value)
    assert str(path) in msg and wrong in msg and f"'chainrule train {command}'" in msg, msg
