<?php
// Loaded first by every entry point: reads the shared .env and points PHP
// sessions at the shared sessions directory. It has no version of its own.
declare(strict_types=1);

const APP_ROOT = __DIR__ . '/..';

/** @return array<string, string> settings from APP_ROOT/.env, a symlink into shared/ once deployed */
function app_settings(): array
{
    static $settings = null;
    if ($settings === null) {
        $settings = [];
        $lines = @file(APP_ROOT . '/.env', FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES);
        foreach ($lines === false ? [] : $lines as $line) {
            $line = trim($line);
            if ($line === '' || $line[0] === '#' || !str_contains($line, '=')) {
                continue;
            }
            [$key, $value] = explode('=', $line, 2);
            $settings[trim($key)] = trim($value);
        }
    }
    return $settings;
}

function app_env(string $key, string $default = ''): string
{
    return app_settings()[$key] ?? $default;
}

function app_env_loaded(): bool
{
    return is_readable(APP_ROOT . '/.env') && app_settings() !== [];
}

session_save_path(APP_ROOT . '/storage/sessions');
