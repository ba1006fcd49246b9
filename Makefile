# The entry points the README opens with, and the README's generated configuration reference.
.PHONY: demo test readme

demo:
	scripts/demo.sh

test:
	scripts/test.sh

# Regenerates the README's configuration reference from proxy.toml (tests/readme_config.rs checks it).
readme:
	cargo run -q -- config-reference --config proxy.toml --write README.md
