<?php
const V_FOOTER = 'v1';

function render_footer(): void
{
    echo '<footer><small>footer ' . V_FOOTER . "</small></footer>\n</body></html>\n";
}
