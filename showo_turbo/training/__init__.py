"""The stages that train or decode: the teacher, the teacher's trajectories and the distillation stage loop."""
