CREATE TABLE "instances" (
	"id" text PRIMARY KEY NOT NULL,
	"holder" text NOT NULL,
	"host" text NOT NULL,
	"pid" integer NOT NULL,
	"data_dir" text NOT NULL,
	"heartbeat_at" timestamp with time zone NOT NULL
);
