<?php
// Each file carries its own copy of the version so that a page assembled
// from two different builds shows up as MIXED (see public/index.php).
const V_CONFIG = 'v1';
