"""DiffSim-S's defaults as plain constants: importable without torch (the CLI's help text uses them)."""

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_LAYER = "up0"
DEFAULT_STEP = 500
DEFAULT_PROMPT = "High quality image"
DEFAULT_SEED = 2334
