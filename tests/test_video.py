"""`ezm eval RUN_DIR --video`: a GIF of every task's first episode, and the same evaluation table."""
import numpy as np
from PIL import Image

from ezm import cli
from ezm import config as C
from ezm.workers.trainer import train

REPEAT = 10  # env.action_repeat: a cartpole episode is 1000 / 10 = 100 decisions, a frame each


def test_eval_with_video_writes_a_gif_per_task_and_the_same_table(tmp_path, capsys):
    cfg = C.build("quickstart", None, [
        "env.suite=cartpole-balance,cartpole-swingup", "env.copies_per_task=1", f"env.action_repeat={REPEAT}",
        "train.env_steps_per_task=320", "learn.warmup_steps=160", "learn.batch_size=8", "train.eval_episodes=1",
        "train.eval_interval=100000", "train.progress=false", "search.simulations=2", "search.root_actions=2",
        "search.root_policy_samples=1", "learn.reanalyze_simulations=2", f"train.run_dir={tmp_path}"])
    run_dir = train(cfg).run_dir
    capsys.readouterr()

    assert cli.main(["eval", str(run_dir), "--episodes", "2"]) == 0
    plain = capsys.readouterr().out
    assert not (run_dir / "videos").exists()
    assert cli.main(["eval", str(run_dir), "--episodes", "2", "--video"]) == 0
    with_video = capsys.readouterr().out
    table = with_video.rsplit("\nvideos ", 1)[0] + "\n"
    assert table == plain  # rendering changes no return
    assert f"written to {run_dir / 'videos'}" in with_video

    for task in ("cartpole-balance", "cartpole-swingup"):
        gif = Image.open(run_dir / "videos" / f"{task}-320.gif")
        assert gif.size == (320, 240) and gif.n_frames == 1000 // REPEAT
        assert gif.info["duration"] == 100  # real time: 0.01 s control steps, 10 per frame
        gif.seek(gif.n_frames // 2)
        colours = np.unique(np.asarray(gif.convert("RGB")).reshape(-1, 3), axis=0)  # [n, 3]
        assert len(colours) > 10  # a rendered scene, not a blank frame
