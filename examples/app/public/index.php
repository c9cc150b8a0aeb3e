<?php
// The page is assembled from several files, each holding its own version
// literal. Served from one build, they all agree. If one request read some
// files from the old build and some from the new one (what a symlink switch
// can cause when paths are resolved through `latest` at different moments),
// they disagree and the page says "status: MIXED".
declare(strict_types=1);

require __DIR__ . '/../src/bootstrap.php';
require __DIR__ . '/../config/version.php';
require __DIR__ . '/../src/header.php';
require __DIR__ . '/../src/body.php';
require __DIR__ . '/../src/footer.php';

const V_INDEX = 'v1';

$versions = [
    'index' => V_INDEX,
    'config' => V_CONFIG,
    'header' => V_HEADER,
    'body' => V_BODY,
    'footer' => V_FOOTER,
    'VERSION' => trim((string) @file_get_contents(APP_ROOT . '/VERSION')),
];
$mixed = count(array_unique($versions)) !== 1;

session_start();
$_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;

header('X-App-Version: ' . ($mixed ? 'MIXED' : V_INDEX));
render_header($versions, $mixed);
render_body($_SESSION['visits']);
render_footer();
