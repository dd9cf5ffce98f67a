"""Tasks: Task records from dm_control, Gymnasium and HumanoidBench, and MultiTaskEnv, which
steps every copy of every task as one padded, masked batch.

    from ezm.tasks.registry import resolve           # "dmc-walker" or "walker-walk,Pendulum-v1"
    from ezm.tasks.multitask_env import MultiTaskEnv
    from ezm.tasks.parallel_env import make_env      # MultiTaskEnv, or its rows in env.sim_workers processes
"""
