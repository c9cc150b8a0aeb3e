<?php
// For load balancers and the after_cutover smoke test: 200 when this build
// can read its shared .env and write sessions, 503 otherwise.
declare(strict_types=1);

require __DIR__ . '/../src/bootstrap.php';

const V_HEALTH = 'v1';

$checks = [
    'env' => app_env_loaded(),
    'sessions' => is_dir(APP_ROOT . '/storage/sessions') && is_writable(APP_ROOT . '/storage/sessions'),
];
$ok = !in_array(false, $checks, true);

http_response_code($ok ? 200 : 503);
header('Content-Type: application/json');
echo json_encode(['status' => $ok ? 'ok' : 'fail', 'version' => V_HEALTH, 'checks' => $checks]), "\n";
