"""What pyproject.toml cannot declare: the repository's top-level ``scenarios/``, ``locustfiles/``
and ``grafana/`` ship inside the wheel as ``harness/_bundled/<name>/`` (``harness.bundled`` finds
them there, or in a checkout), while the repository keeps them at its top level, where users
and the tests look for them. Everything else (metadata, dependencies, entry points) is in
pyproject.toml."""

from setuptools import find_namespace_packages, setup

#: package name inside the wheel -> directory in the repository
BUNDLED = {f"harness._bundled.{name}": name for name in ("scenarios", "locustfiles", "grafana")}
#: non-Python files any harness package may carry: py.typed, and templates such as harness/templates/*.tmpl
#: (what `harness new` writes: it must work from an installed wheel)
PACKAGE_DATA = ["py.typed", "*.yaml", "*.yml", "*.json", "*.md", "*.tmpl", "*.txt", "*.html", "*.css", "*.js"]

setup(
    packages=[*find_namespace_packages(include=["harness", "harness.*"], exclude=["*__pycache__*"]), *BUNDLED],
    package_dir=BUNDLED,
    package_data={"": PACKAGE_DATA, **{package: ["**/*"] for package in BUNDLED}},
    exclude_package_data={"": ["*.pyc", "__pycache__/*", "**/__pycache__/*"]},
    include_package_data=False,
)
