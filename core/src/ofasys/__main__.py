from ofasys.cli import run

run()
