export { createApp } from './app';
export { CONFIG_VARIABLES, type Config, ConfigError, loadConfig } from './config';
export { createLogger, type Logger } from './logger';
export { type RunningServer, type ServerOptions, startServer } from './server';
