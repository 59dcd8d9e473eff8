"""Reading what rl.train wrote, for the tests."""
from rl import run_io
from rl.policy import Policy


def trained_weights(logdir):
    """(the policy parameters of the newest checkpoint as numpy arrays, its iteration)."""
    config = run_io.read_config(logdir)
    policy = Policy(config["obs_dim"], config["act_dim"], config["hidden_sizes"], config["hidden_activation"])
    state = run_io.RunState(logdir, policy.model)
    state.restore(require=True)
    return [p.numpy() for p in policy.params], int(state.iteration)
