"""Child process of test_ray_workers.py: start verl's own run_ppo (verl/trainer/main_ppo.py) as `main_ppo` does, with
verl's ppo_trainer.yaml composed with the overrides in argv[1] (JSON list), and report what its Ray worker sees.

The one stand-in: the TaskRunner actor class. verl's TaskRunner builds the whole trainer (GPU worker groups); here
the same slot (run_ppo's `task_runner_class`, or main_ppo.TaskRunner before 0.6.1) holds a Probe actor that is
started exactly as verl starts its TaskRunner (`.remote()` after run_ppo's own ray.init, in the same job and so with
the same runtime_env) and writes the worker's view (env vars, whether compat is set up there) to argv[2].
"""
import inspect
import json
import sys

import ray
from verl.trainer import main_ppo

from vhelp import compose

OUT = sys.argv[2]


@ray.remote(num_cpus=1)
class Probe:
    def run(self, config):
        import os

        rep = None
        if "compat" in sys.modules:       # set up by the worker hook or COMPAT_AUTOLOAD, not imported here
            import compat
            rep = compat.current()
        seen = {"env": {k: os.environ.get(k) for k in ("NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "COMPAT_HARDWARE")},
                "compat_set_up": rep is not None, "profile": rep.resolved.profile.name if rep else None}
        with open(OUT, "w") as f:
            json.dump(seen, f)
        return seen


cfg = compose(json.loads(sys.argv[1]))
if "task_runner_class" in inspect.signature(main_ppo.run_ppo).parameters:
    main_ppo.run_ppo(cfg, task_runner_class=Probe)
else:
    main_ppo.TaskRunner = Probe
    main_ppo.run_ppo(cfg)
ray.shutdown()
