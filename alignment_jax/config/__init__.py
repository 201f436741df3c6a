"""Run settings.

base.py   every field of a run with its default (`base_config`); configs/*.py override a few
args.py   big_vision-style config arguments (`:runlocal=True,...`) and the runlocal shrink
files.py  run specs as text (`[NAME=]PATH[:ARG][ KEY=VALUE ...]`), loading config files, overrides
"""
