"""Developer tools kept in the repository, not installed with the diffcd package.

`python -m tools.hubserver` runs a loopback stand-in for the Hugging Face Hub, for the tests and
for trying push and pull offline.
"""
