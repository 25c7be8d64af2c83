"""The demo generator: a small text-to-image model of the real Stable Diffusion classes that the
project trains itself on digits printed in the fonts bundled with matplotlib, and ships."""
