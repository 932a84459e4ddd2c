"""The wheel carries the org-code library: the top-level prompts/, skills/ and topologies/ (the files people edit
in this repository) are copied into the package as `autoorg/library/`, where `autoorg.orgcode.bundled_root` finds them.
An editable install copies nothing: it finds them at the checkout's top level."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

LIBRARY_FOLDERS = ("prompts", "skills", "topologies")  # = autoorg.orgcode.LIBRARY_FOLDERS


class build_py_with_library(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = Path(__file__).parent
        for folder in LIBRARY_FOLDERS:
            dest = Path(self.build_lib) / "autoorg" / "library" / folder
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(here / folder, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": build_py_with_library})
