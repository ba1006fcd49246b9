# The two entry points the README opens with.
.PHONY: demo test

demo:
	scripts/demo.sh

test:
	scripts/test.sh
