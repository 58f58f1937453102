# Shortcuts for the entry scripts (the README's commands need no make: a fresh Debian has none).
.PHONY: demo test lint lab-down clean
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
lint:
	bash scripts/test.sh lint
lab-down:
	bash -c 'source scripts/env.sh && scripts/setup.sh && patchwave lab down'
clean: lab-down
	rm -rf .venv output
