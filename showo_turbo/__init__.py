"""showo-turbo: a workbench for Show-o Turbo (consistency distillation of a unified multimodal model)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Loaders for official folders, at the package top without importing torch for every submodule.
    if name == "load_magvitv2":
        from .worlds.showo.magvit import load_magvitv2

        return load_magvitv2
    if name == "load_phi_tokenizer":
        from .worlds.showo.phi_tokenizer import load_phi_tokenizer

        return load_phi_tokenizer
    raise AttributeError(f"module 'showo_turbo' has no attribute {name!r}")
