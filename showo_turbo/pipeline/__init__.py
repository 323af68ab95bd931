"""The pipeline's plumbing: params validation, the stage runner, atomic io, shards, project errors."""
