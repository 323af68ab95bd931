"""showo-turbo: a workbench for Show-o Turbo (consistency distillation of a unified multimodal model)."""

__version__ = "0.1.0"
