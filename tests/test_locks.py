"""One writer per resumable folder: a second run that would train or collect into a folder another
process is writing is refused in one line naming the folder and the holder's PID, before it writes."""

import subprocess
import sys
import textwrap

import pytest
import torch

from showo_turbo.model.showo import ShowoModel
from showo_turbo.pipeline.io import FolderBusyError, exclusive_folder
from showo_turbo.training.teacher import model_config_for
from showo_turbo.training.trajectories import collect_t2i


def test_a_second_writer_is_refused_naming_the_folder_and_the_holder(micro_world, micro_params, tmp_path):
    folder = tmp_path / "trajectories" / "t2i"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from showo_turbo.pipeline.io import exclusive_folder
        with exclusive_folder({str(folder)!r}):
            print("held", flush=True)
            sys.stdin.read()   # until the test closes it
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        teacher = ShowoModel(model_config_for(micro_world, "micro")).eval()
        with pytest.raises(FolderBusyError) as e:
            collect_t2i(teacher, micro_world, micro_params.trajectories, folder, progress=False)
        assert str(e.value) == (f"{folder}: another process (PID {holder.pid}) is writing it; "
                                "wait for it or stop it")
        assert not any(folder.iterdir()) if folder.exists() else True  # nothing written
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with exclusive_folder(folder):  # released with its holder: the folder is free again
        pass
    torch.manual_seed(0)
    collect_t2i(teacher, micro_world, micro_params.trajectories, folder, progress=False)
    assert (folder / "manifest.json").is_file()
