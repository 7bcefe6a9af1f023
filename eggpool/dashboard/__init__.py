"""Pure dashboard rendering: stats in, HTML and inline SVG out, styled by a theme."""
