"""Copy the outputs of `# NBVAL_CHECK_OUTPUT` cells from an executed notebook into its source.

nbval (lax mode) compares only those cells, against the outputs stored in notebooks/. After a
deliberate change to what such a cell prints, run the micro pipeline and bake its report:

    bash scripts/micro.sh /tmp/micro
    python scripts/bake_checked_outputs.py /tmp/micro/reports/00_world.ipynb notebooks/00_world.ipynb
"""

import sys

import nbformat

from showo_turbo.pipeline.errors import run_cli

MARK = "# NBVAL_CHECK_OUTPUT"


def main(executed: str, source: str) -> None:
    done = nbformat.read(executed, as_version=4)
    src = nbformat.read(source, as_version=4)
    by_code = {c.source: c for c in done.cells if c.cell_type == "code"}
    n = 0
    for cell in src.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith(MARK):
            if cell.source not in by_code:
                sys.exit(f"cell not found in {executed}: {cell.source.splitlines()[0:2]}")
            cell.outputs = by_code[cell.source].outputs
            cell.execution_count = 1  # nbval refuses outputs on a cell that looks unrun
            n += 1
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(src, source)
    print(f"baked {n} checked cell(s) into {source}")


if __name__ == "__main__":
    sys.exit(run_cli(lambda: main(*sys.argv[1:3]), "bake_checked_outputs.py"))
