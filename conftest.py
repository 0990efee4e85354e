"""Collection rules for `python -m pytest` (tests/ plus the doctests in src/sftune).

With --doctest-modules pytest would also import every tests/**/conftest.py as a doctest module;
those share one basename without packages, so the second import fails. They hold no doctests:
skip them as doctest modules (pytest still loads them as conftests).
"""


def pytest_ignore_collect(collection_path, config):
    if collection_path.name == "conftest.py":
        return True
    return None
