from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="ndpatch",
    version="0.1.0",
    description="Fast random-access training patches from large images, indexed by kwcoco",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["ndpatch", "ndpatch.*"]),
    install_requires=[
        "numpy>=1.26",
        "GDAL>=3.6",
        "kwcoco>=0.8",
        "kwimage>=0.11",
        "ubelt>=1.3",
        "filelock>=3.12",
        "tqdm>=4.60",
        "psutil>=5.9",
    ],
    extras_require={
        "torch": ["torch>=2.0"],
        "compare": ["ndsampler==0.8.1"],
        "tests": ["pytest", "pytest-timeout", "hypothesis", "psutil"],
    },
    entry_points={"console_scripts": ["ndpatch = ndpatch.cli:main"]},
)
