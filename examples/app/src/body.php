<?php
const V_BODY = 'v1';

function render_body(int $visits): void
{
    echo '<main><p>Served by build ' . V_BODY . '.</p>';
    // The session lives in storage/sessions, shared across builds, so the
    // count survives a deploy.
    echo '<p>Visits this session: ' . $visits . "</p></main>\n";
}
