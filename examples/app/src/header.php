<?php
const V_HEADER = 'v1';

/** @param array<string, string> $versions */
function render_header(array $versions, bool $mixed): void
{
    $title = htmlspecialchars(app_env('APP_NAME', 'shop'));
    echo "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{$title}</title></head><body>\n";
    echo "<header><h1>{$title} " . V_HEADER . "</h1></header>\n";
    $pairs = [];
    foreach ($versions as $file => $version) {
        $pairs[] = $file . '=' . $version;
    }
    // One machine-readable line for smoke tests: grep for "status: ok".
    echo '<pre id="versions">versions: ' . htmlspecialchars(implode(' ', $pairs))
        . "\nstatus: " . ($mixed ? 'MIXED' : 'ok') . "</pre>\n";
}
