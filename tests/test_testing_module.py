"""ndpatch.testing ships in the wheel: importing it needs neither pytest nor hypothesis."""
import subprocess
import sys

CHILD = """
import sys
sys.modules["pytest"] = sys.modules["hypothesis"] = None  # as if not installed
import ndpatch.testing as testing
print(testing.PROCESS_SPECS[0]["dtype"])
try:
    testing.BackendConformance
except ImportError as err:
    print(err)
"""


def test_importing_it_needs_no_test_libraries():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["uint8", "ndpatch.testing.BackendConformance needs pytest and hypothesis "
                                          "(pip install pytest hypothesis)"]


def test_the_conformance_class_is_built_once():
    from ndpatch import testing
    assert testing.BackendConformance is testing.BackendConformance
    assert testing.BackendConformance.__qualname__ == "BackendConformance"
